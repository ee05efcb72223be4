import sys

from segrefiner.cli import main

sys.exit(main())
