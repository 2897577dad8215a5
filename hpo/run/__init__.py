"""Running a sweep: Ray, trials, the baseline, pipelines, and what a sweep records as it goes."""
