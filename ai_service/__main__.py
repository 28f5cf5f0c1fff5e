"""`python -m ai_service`, the same as the `ai-service` command."""

import sys

from ai_service.cli import main

if __name__ == "__main__":
    sys.exit(main())
