import sys

from movers3.entry import main

sys.exit(main())
