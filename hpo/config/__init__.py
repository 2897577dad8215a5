"""The sweep file read at the edge: parsed, checked and frozen into typed config."""
