"""Reports: what a labeling project's history looks like (plots, HTML)."""
