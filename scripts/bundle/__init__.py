"""The bundler's command line (the bundler itself is stacks/bundling):

* build: `python -m scripts.bundle.build [--env ENV] [--cache-dir DIR]`, one backend bundle, as the stack
  builds it (the benchmark's cold row);
* lock: `make lock` (`python -m scripts.bundle.lock [BACKEND]`), requirements.lock beside a backend's
  requirements.txt.
"""
