import sys

from sparselabel.cli import main

sys.exit(main())
