"""What to try next: search spaces, the TPE searcher, the ASHA scheduler and the objective."""
