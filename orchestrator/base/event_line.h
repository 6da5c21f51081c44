/* The exec runtime's event lines: what a function writes to its events fd (IGNIS_EVENTS_FD), one
 * JSON object a line, {"type": "...", "data": any, "datacontenttype": "..."}. The watchdog links
 * no JSON library (it starts in every fresh container: docs/performance.md), so it passes each line
 * as written in an EVENT_JSON frame and the controller reads it here into the EVENT frame it stands
 * for. */
#pragma once

#include "base/protocol.h"

/* What the EVENT frame read from a line points into; event_line_done frees it. */
struct event_line {
    void *json;
    char *text;
};

/* Reads frame (an EVENT_JSON frame) into *event, an EVENT frame for the same invocation: data
 * that is a string is text (text/plain; charset=utf-8), anything else is JSON
 * (application/json), "datacontenttype" overrides either. Returns 0, -EINVAL for a line that is
 * not an object with a non-empty string "type", -ENOMEM. *hold is set either way. */
int event_line_read(const struct proto_msg *frame, struct proto_msg *event,
                    struct event_line *hold);
void event_line_done(struct event_line *hold);
