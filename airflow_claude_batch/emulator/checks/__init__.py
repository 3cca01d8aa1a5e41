"""What the API refuses and how it says so: the front door's header checks, a request's checks, and the
error answers.
"""
