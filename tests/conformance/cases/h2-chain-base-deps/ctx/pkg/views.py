def index(): pass
