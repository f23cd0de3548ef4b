"""python -m labelwise ... == the labelwise command."""
from labelwise.cli import main

main()
