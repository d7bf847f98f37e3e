import sys

from cjo.cli import main

sys.exit(main())
