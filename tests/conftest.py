import os

# Compiled functions are cached between runs here (the Makefile sets the same folder).
os.environ.setdefault("SYMGRAD_CACHE_DIR",
                      os.path.join(os.path.dirname(os.path.dirname(__file__)), ".symgrad-cache"))
