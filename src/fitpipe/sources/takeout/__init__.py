"""Google Takeout archives (fitpipe import): the archive (archive.py), the file families and their
time rules (families.py), indexing and staging per local day (index.py), and the import itself
(importer.py). The source that hands staged days to the loader is fitpipe.sources.takeout.source;
the payload format that turns them into rows is fitpipe.sources.takeout.parse.
"""
