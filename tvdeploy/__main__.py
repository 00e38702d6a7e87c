from tvdeploy.cli.app import main

main()
