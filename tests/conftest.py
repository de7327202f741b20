import os

# Compiled functions are cached between runs here (the Makefile sets the same folder).
os.environ.setdefault("SYMGRAD_CACHE_DIR",
                      os.path.join(os.path.dirname(os.path.dirname(__file__)), ".symgrad-cache"))

# Tests compare compiled code with the interpreter, so every function waits for its compiled
# kernel (tests/compiler/test_background.py covers the interpreter serving calls meanwhile).
os.environ["SYMGRAD_BACKGROUND_COMPILE"] = "0"

# A rewrite rule that changes a shape or dtype, or rules that never settle, fail the test
# (in use they warn and are skipped).
os.environ["SYMGRAD_STRICT_RULES"] = "1"
