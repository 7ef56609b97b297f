import sys

from movers3.cli import main

sys.exit(main())
