"""The storyboard language: YAML with positions, templates, schemas, resolution and the graph."""
