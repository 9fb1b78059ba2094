import sys

from keyproof.cli import main

sys.exit(main())
