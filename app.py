"""Start ST-VLA Studio from a checkout: `python app.py` (the same as the installed `stvla-studio`
command) serves http://127.0.0.1:7860 offline on the bundled episodes; `--help` lists the flags."""

import sys

from app.main import main

if __name__ == "__main__":
    main(sys.argv[1:])
