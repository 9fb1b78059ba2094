import sys

from keyproof_client._cli import main

sys.exit(main())
