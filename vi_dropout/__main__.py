import sys

from vi_dropout.cli import main

sys.exit(main())
