import sys

from lightfer_utils.cli import main

sys.exit(main())
