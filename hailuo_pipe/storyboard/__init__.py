"""The storyboard language: YAML with positions, templates, schemas, resolution and the graph,
and the checks of a storyboard's own consistency and of the files beside its spec."""
