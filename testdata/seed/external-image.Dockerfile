# The note shows only the COPY line ("Use an external image as a stage"); the FROM around it
# is ours.
FROM debian:buster
COPY --from=nginx:latest /etc/nginx/nginx.conf /nginx.conf
