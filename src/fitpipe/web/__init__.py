"""`fitpipe serve`: a read-only web app on the database for the study team.

Pages (server-rendered HTML, a little JavaScript, charts by the vendored uPlot): the cohort
(`/`), one participant (`/participants/ID`) and the pipeline (`/pipeline`); the data they show
is also served as JSON under `/api/v1/`. Every number comes from the library calls the CLI
makes (adherence, status, export), so the page and the terminal never disagree.
"""
