from discord_orch.cli import main

main()
