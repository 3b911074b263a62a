"""The picture: `make diagram` runs `python -m scripts.diagram --out docs/architecture.svg`, one synthesized
stack drawn as a self-contained SVG from cdk.out/tree.json (`--check` exits 1 when the file is stale).
"""
