import sys

from multiview.cli import main

sys.exit(main())
