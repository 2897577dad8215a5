"""A finished run read and written: the run directory, the best recipe, exports, reports."""
