print("srv")
