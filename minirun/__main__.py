from minirun.cli.main import main

main()
