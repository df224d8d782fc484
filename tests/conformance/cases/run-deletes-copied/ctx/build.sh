cat src/* > out.bin
