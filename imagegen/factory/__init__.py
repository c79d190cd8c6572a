"""imagegen.factory: the one place that turns config names into objects."""
