#include "base/event_line.h"

#include <cjson/cJSON.h>

int event_line_read(const struct proto_msg *frame, struct proto_msg *event, struct event_line *hold)
{
    *hold = (struct event_line){};
    cJSON *root = cJSON_ParseWithLength(frame->body.data, frame->body.len);
    hold->json = root;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (!cJSON_IsString(type) || !type->valuestring[0])
        return -EINVAL;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "datacontenttype");
    *event = (struct proto_msg){
        .type = PROTO_EVENT, .id = frame->id, .event_type = proto_str(type->valuestring)};
    if (cJSON_IsString(data)) {
        event->body = proto_str(data->valuestring);
        event->content_type = proto_str("text/plain; charset=utf-8");
    } else if (data) {
        hold->text = cJSON_PrintUnformatted(data);
        if (!hold->text)
            return -ENOMEM;
        event->body = proto_str(hold->text);
        event->content_type = proto_str("application/json");
    }
    if (cJSON_IsString(ct))
        event->content_type = proto_str(ct->valuestring);
    return 0;
}

void event_line_done(struct event_line *hold)
{
    cJSON_Delete(hold->json);
    free(hold->text);
    *hold = (struct event_line){};
}
