from weldfusion.cli.main import main

raise SystemExit(main())
