"""Print one of the README's two set-up commands (``run`` or ``test``).

Each sits in a fenced ``sh`` block right after an HTML comment
``<!-- command: NAME -->``, so CI and the tests run exactly what users read.
"""

import re
import sys
from pathlib import Path

name = sys.argv[1]
text = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
match = re.search(rf"<!-- command: {re.escape(name)} -->\s*```sh\n(.*?)```", text, re.S)
if not match:
    sys.exit(f"README.md has no '<!-- command: {name} -->' block")
print(" ".join(line.strip() for line in match.group(1).strip().splitlines()).replace("\\ ", ""))
