// Validates ServiceMonitor objects (a JSON array on stdin) with the validators of
// @kubernetes-models/prometheus-operator, generated from prometheus-operator's API types;
// prints one line per object: "ok" or the validation errors.
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

for (const doc of JSON.parse(readFileSync(0, "utf8"))) {
  try {
    new ServiceMonitor(doc).validate();
    console.log("ok");
  } catch (err) {
    console.log(String(err.message).replace(/\n/g, " "));
  }
}
