import { Guest, setGuest } from "@ftvm/guest-sdk/assembly";
export * from "@ftvm/guest-sdk/assembly/exports";
class K extends Guest {}
setGuest(new K());
