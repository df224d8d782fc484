FROM debian:buster AS stage1
RUN echo "Stage1" > /opt/stage1

FROM stage1 AS stage2
RUN echo "Stage2" > /opt/stage2

FROM debian:buster
COPY --from=stage2 /opt /opt
CMD cat /opt/stage1 && cat /opt/stage2
