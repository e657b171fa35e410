import sys

from segr1.cli import main

sys.exit(main())
