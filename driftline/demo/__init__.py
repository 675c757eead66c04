"""The demo: a model's day in production told as a story, judged, and reported."""
