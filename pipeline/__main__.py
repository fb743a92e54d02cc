from pipeline.cli import main
from pipeline.console import exit_with

exit_with(main())
