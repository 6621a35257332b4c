from minirun.main import main

main()
