mkdir -p /opt/installed
echo installed > /opt/installed/marker
