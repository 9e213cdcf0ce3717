import sys

from nba.cli import main

sys.exit(main())
