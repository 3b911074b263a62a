"""Bundler parts that work on a built bundle or its inputs: the static import closure and sdist wheels."""
