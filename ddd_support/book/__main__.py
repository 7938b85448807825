"""``python -m ddd_support.book``: run the book (``book.run``)."""

import sys

from ddd_support.book.run import main

sys.exit(main())
