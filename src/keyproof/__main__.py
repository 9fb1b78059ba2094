import sys

from keyproof.server.cli import main

sys.exit(main())
