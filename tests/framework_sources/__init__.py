"""Framework launch scripts and configs as the frameworks publish them, written into the tests
(each names its repository, path and commit), for the importers and the shell reader."""
