"""`make graph`: `python -m scripts.dependency_graph --env ENV` writes docs/dependency-graph.md, which
functions reach which shared backend modules (graph.py)."""
