"""Side-by-side measurements of keyproof's hot paths; run with ``make bench``."""
