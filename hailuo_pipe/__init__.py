"""hailuo-pipe: storyboards as code for the MiniMax Hailuo 02 video model."""

__version__ = "0.1.0"
