print('m')
