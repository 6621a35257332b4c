"""What both front ends, the CLI and the Engine API (minirun/api), share: docker's option rules
for a new container, the documents (inspect, ps, images, version, info), rows and filters. No argv
parsing and no printing: cli/ parses and renders, api/ reads JSON and answers it."""
