"""REST resources, one module per resource (see ``coppice.api.ops``)."""
